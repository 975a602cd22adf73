# -*- coding: utf-8 -*-
# Copyright (c) nova.snapshots contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for the get-pip.py that ansible-test downloads from its own CI file host.

That host is out of reach here (only package registries are), so this script gives an empty
virtual environment pip with ensurepip and then installs the requested pip from PyPI, which is
what get-pip.py does. Called by ansible-test as `get_pip.py [pip options] pip==X [--no-setuptools]`.
"""

from __future__ import annotations

import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install', '-q'] + args))
