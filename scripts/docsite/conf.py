# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sphinx configuration of the documentation site that `make docs` builds (scripts/docs.sh).

Started from what `antsibull-docs sphinx-init --squash-hierarchy` writes. Differences: the guides
(docs/*.md) are Markdown, read by myst-parser; intersphinx is off unless NOVA_DOCS_INTERSPHINX=1,
because its inventories come from docs.python.org and docs.ansible.com, which an offline build
cannot reach (links to those sites then stay plain text).
"""

from __future__ import annotations

import os

project = 'nova.snapshots'
copyright = 'nova.snapshots contributors'  # noqa: A001 (Sphinx's name)

title = 'nova.snapshots'
html_short_title = 'nova.snapshots'

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.intersphinx', 'sphinx_antsibull_ext', 'myst_parser']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

# The guides (docs/*.md) are pages of their own, under docsite/ (scripts/docs.sh puts them there).
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
# Anchors for the guides' headings, so links such as roles.md#variables-shared-by-the-roles resolve.
myst_heading_anchors = 3

if os.environ.get('NOVA_DOCS_INTERSPHINX') == '1':
    intersphinx_mapping = {
        'python3': ('https://docs.python.org/3/', None),
        'jinja2': ('https://jinja.palletsprojects.com/', None),
        'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', None),
    }
else:
    intersphinx_mapping = {}

default_role = 'any'
nitpicky = True

# Offline, the labels of Ansible's own documentation that antsibull-docs' pages refer to resolve to
# fixed addresses on docs.ansible.com (intersphinx would look them up in the inventory it fetches).
ANSIBLE_DOCS = 'https://docs.ansible.com/projects/ansible/devel/'
ANSIBLE_LABELS = {
    'ansible_configuration_settings': ('reference_appendices/config.html', 'Ansible Configuration Settings'),
    'common_return_values': ('reference_appendices/common_return_values.html', 'Return Values'),
}


def _ansible_label(app, env, node, contnode):
    from docutils import nodes

    if node.get('refdomain') != 'std' or node.get('reftype') != 'ref' or node.get('reftarget') not in ANSIBLE_LABELS:
        return None
    path, title = ANSIBLE_LABELS[node['reftarget']]
    text = contnode.astext() if contnode is not None and contnode.astext() != node['reftarget'] else title
    return nodes.reference('', text, internal=False, refuri=ANSIBLE_DOCS + path)


def setup(app):
    # After intersphinx (priority 500 by default), so a fetched inventory wins when there is one.
    app.connect('missing-reference', _ansible_label, priority=900)
