# nova.snapshots: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV  := $(CURDIR)/.venv
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export ANSIBLE_PYTHON_INTERPRETER := $(VENV)/bin/python
export ANSIBLE_LOCALHOST_WARNING := False
export ANSIBLE_INVENTORY_UNPARSED_WARNING := False

.PHONY: setup demo demo-clean demo-fleet demo-fleet-clean test test-fleet sanity unit integration bench

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/ansible-playbook -i localhost, nova.snapshots.demo

demo-clean:
	-virsh -c qemu:///system destroy nova-demo
	-virsh -c qemu:///system undefine nova-demo --snapshots-metadata
	-virsh -c qemu:///system destroy nova-demo-web
	-virsh -c qemu:///system undefine nova-demo-web --snapshots-metadata
	-virsh -c qemu:///system destroy nova-demo-chain
	-virsh -c qemu:///system undefine nova-demo-chain --snapshots-metadata
	rm -rf /var/lib/nova-demo /var/lib/nova/snapshots/nova-demo /var/lib/nova/snapshots/nova-demo-web \
	       /var/lib/nova/snapshots/nova-demo-chain /var/lib/nova/snapshots/policies/demo-hourly.json

# Three simulated hypervisors (tests/fleet/fleet.sh), one policy from group_vars, one run over them.
demo-fleet: setup
	tests/fleet/fleet.sh up 3
	$(VENV)/bin/ansible-playbook -i demo/fleet/inventory demo/fleet.yml

demo-fleet-clean:
	tests/fleet/fleet.sh down

test: setup
	@scripts/test.sh

sanity: setup
	@scripts/sanity.sh

unit: setup
	$(VENV)/bin/pytest tests/unit

# The fleet tests (three hypervisors over ssh, the REST API playbooks through ansible-runner).
test-fleet: setup
	$(VENV)/bin/pytest -q tests/fleet

integration: setup
	$(VENV)/bin/pytest tests/integration

bench: setup
	cd bench && $(VENV)/bin/python run.py
