# nova.snapshots: the two commands are `make demo` and `make test` (see README.md).
# `make release-check` runs the validators a release needs (part of `make test`); `make docs` builds the site.
SHELL := /bin/bash
VENV  := $(CURDIR)/.venv
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
export ANSIBLE_PYTHON_INTERPRETER := $(VENV)/bin/python
export ANSIBLE_LOCALHOST_WARNING := False
export ANSIBLE_INVENTORY_UNPARSED_WARNING := False

.PHONY: setup demo demo-clean demo-fleet demo-fleet-clean test test-fleet sanity release-check docs ee unit integration bench bench-large bench-plot

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/ansible-playbook -i localhost, demo/demo.yml
	tests/fleet/fleet.sh up 3
	$(VENV)/bin/ansible-playbook -i demo/fleet/inventory demo/fleet.yml

demo-clean:
	-virsh -c qemu:///system destroy nova-demo
	-virsh -c qemu:///system undefine nova-demo --snapshots-metadata
	-virsh -c qemu:///system destroy nova-demo-web
	-virsh -c qemu:///system undefine nova-demo-web --snapshots-metadata
	-virsh -c qemu:///system destroy nova-demo-chain
	-virsh -c qemu:///system undefine nova-demo-chain --snapshots-metadata
	rm -rf /var/lib/nova-demo /var/lib/nova/snapshots/nova-demo /var/lib/nova/snapshots/nova-demo-web \
	       /var/lib/nova/snapshots/nova-demo-chain /var/lib/nova/snapshots/policies/demo-hourly.json
	tests/fleet/fleet.sh down

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

# galaxy-importer (Automation Hub's settings), ansible-lint production, antsibull-changelog and
# antsibull-docs lint, build + install + verify, the EE's build context, ansible-test sanity on
# ansible-core 2.18 and 2.19. Logs in .build/release/.
release-check: setup
	@scripts/release-check.sh

# The documentation site, into .build/docs/build/html/index.html.
docs: setup
	@scripts/docs.sh

# The execution environment's build context (.build/ee-context), from a fresh tarball; then
# `ansible-builder build` there with podman or docker.
ee: setup
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .build/dist .
	$(VENV)/bin/ansible-builder create -f execution-environment.yml -c .build/ee-context

unit: setup
	$(VENV)/bin/pytest tests/unit

# The fleet tests (three hypervisors over ssh, the REST API playbooks through ansible-runner).
test-fleet: setup
	$(VENV)/bin/pytest -q tests/fleet

integration: setup
	$(VENV)/bin/pytest tests/integration

bench: setup
	cd bench && $(VENV)/bin/python run.py

# The collection at the sizes users run (10 GiB disks, GiB of dirty RAM, hundreds of snapshots; about
# 25 minutes on 2 cores): every figure also into .build/bench-large.json, which `make bench-plot` draws
# into docs/benchmarks/.
bench-large: setup
	cd bench && NOVA_BENCH_LARGE_JSON=$(CURDIR)/.build/bench-large.json $(VENV)/bin/python bench_large.py

bench-plot: setup
	$(VENV)/bin/python bench/plot.py .build/bench-large.json docs/benchmarks
