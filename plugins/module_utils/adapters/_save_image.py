# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE: this file is private to the nova.snapshots collection. Its API may change at any time.

"""The domain XML inside a libvirt QEMU save image (a memory file), rewritten in place.

Restoring RAM under a new name needs the saved XML to name the new domain. libvirt's own ways
(restore with a new XML, virDomainSaveImageDefineXML) check that XML against the saved one and
refuse another name or UUID, so the header is rewritten here, the way virDomainSaveImageDefineXML
writes it (libvirt src/qemu/qemu_saveimage.c): magic "LibvirtQemudSave", version, data_len,
was_running, format, cookieOffset, then `data_len` bytes: the XML, NUL, the cookie, NUL, zero
padding (64 KiB is left for such edits). QEMU's state after it is not touched.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

from ansible_collections.nova.snapshots.plugins.module_utils.model._errors import NovaError

MAGIC = b'LibvirtQemudSave'
_FIELDS = struct.Struct('<5I')       # version, data_len, was_running, format, cookieOffset


def _layout(head, path):
    if head[:16] != MAGIC:
        raise NovaError('%s is not a complete libvirt save image (bad magic)' % path)
    version, data_len, _running, _fmt, cookie_offset = _FIELDS.unpack_from(head, 16)
    start = head.find(b'<', 16 + _FIELDS.size)
    if version != 2 or start < 0 or start > 256:
        raise NovaError('%s: unsupported libvirt save image header (version %d)' % (path, version))
    return data_len, cookie_offset, start


def read_xml(path):
    with open(path, 'rb') as f:
        head = f.read(4096)
        data_len, cookie_offset, start = _layout(head, path)
        f.seek(start)
        data = f.read(data_len)
    xml_len = cookie_offset or data_len
    return data[:xml_len].split(b'\0', 1)[0].decode('utf-8')


def write_xml(path, xml):
    """Replace the domain XML of the save image `path`, keeping its cookie, within data_len."""
    with open(path, 'r+b') as f:
        head = f.read(4096)
        data_len, cookie_offset, start = _layout(head, path)
        f.seek(start)
        data = f.read(data_len)
        cookie = b''
        if cookie_offset:
            cookie = data[cookie_offset:].split(b'\0', 1)[0] + b'\0'
        new_xml = xml.encode('utf-8') + b'\0'
        if len(new_xml) + len(cookie) > data_len:
            raise NovaError('%s: the edited domain XML does not fit in the save image (%d bytes, room for %d)'
                            % (path, len(new_xml) + len(cookie), data_len))
        body = new_xml + cookie
        body += b'\0' * (data_len - len(body))
        version, _dl, running, fmt, _co = _FIELDS.unpack_from(head, 16)
        f.seek(16)
        f.write(_FIELDS.pack(version, data_len, running, fmt, len(new_xml) if cookie_offset else 0))
        f.seek(start)
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
