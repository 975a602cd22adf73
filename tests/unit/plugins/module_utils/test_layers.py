# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The core's layering rule (docs/architecture.md), checked on the source: imports point downward only,
and no file reaches into another object's or module's private names."""

from __future__ import annotations

import ast
import os

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PLUGINS = os.path.join(TOP, 'plugins')
PREFIX = 'ansible_collections.nova.snapshots.plugins.'

# What each layer may import from the collection (itself included: files of one layer work together).
ALLOWED = {
    'module_utils/model': {'module_utils/model'},
    'module_utils/adapters': {'module_utils/model', 'module_utils/adapters'},
    'module_utils/operations': {'module_utils/model', 'module_utils/adapters', 'module_utils/operations'},
    'module_utils/_common': {'module_utils/model', 'module_utils/adapters', 'module_utils/operations',
                             'module_utils/_common'},
    'modules': {'module_utils/_common', 'module_utils/model', 'module_utils/adapters', 'module_utils/operations'},
    'doc_fragments': set(),
    'plugin_utils': set(),
    'action': {'plugin_utils'},
}


def layer_of(rel):
    """'module_utils/operations/_create.py' -> 'module_utils/operations'; a module -> 'modules'."""
    parts = rel[:-3].split('/')
    if parts[0] == 'module_utils':     # a file directly in module_utils (_common, _observe) is module glue
        return 'module_utils/_common' if len(parts) == 2 and parts[1].startswith('_') else '/'.join(parts[:2])
    return parts[0]


def sources():
    for dirpath, _dirs, files in os.walk(PLUGINS):
        for name in sorted(files):
            if name.endswith('.py') and name != '__init__.py':
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, PLUGINS), path


def collection_imports(tree):
    """(layer imported, names imported, line) for every import of the collection's own code."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            target = node.module[len(PREFIX):].replace('.', '/') + '.py'
            yield layer_of(target), [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PREFIX):
                    yield layer_of(alias.name[len(PREFIX):].replace('.', '/') + '.py'), [], node.lineno


def is_module(package_layer, name):
    """`from package import _name` names a file of the package (the core's file names all start with
    '_'), not a private name inside one."""
    return os.path.exists(os.path.join(PLUGINS, package_layer, name + '.py'))


FILES = sorted(sources())


def test_every_layer_has_files():
    layers = set(layer_of(rel) for rel, _path in FILES)
    assert {'module_utils/model', 'module_utils/adapters', 'module_utils/operations', 'modules'} <= layers


@pytest.mark.parametrize('rel,path', FILES, ids=[rel for rel, _path in FILES])
def test_imports_point_downward_and_names_are_public(rel, path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    layer = layer_of(rel)
    wrong = []
    for target, names, line in collection_imports(tree):
        if target not in ALLOWED[layer]:
            wrong.append('%s:%d imports from %s, which %s may not use' % (rel, line, target, layer))
        wrong += ['%s:%d imports the private name %s' % (rel, line, n) for n in names
                  if n.startswith('_') and not is_module(target, n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith('_') and not node.attr.startswith('__'):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ('self', 'cls'):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == 'super':
                continue
            wrong.append('%s:%d reaches into %s' % (rel, node.lineno, node.attr))
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path):
    """The check itself can fail: an adapter importing an operation is caught."""
    code = 'from ansible_collections.nova.snapshots.plugins.module_utils.operations._create import plan_create\n'
    found = list(collection_imports(ast.parse(code)))
    assert found == [('module_utils/operations', ['plan_create'], 1)]
    assert found[0][0] not in ALLOWED['module_utils/adapters']
