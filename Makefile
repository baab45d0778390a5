# One-stop settlement. `make run` and `make test` set themselves up on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/libs:$(CURDIR)

.PHONY: run test demo docs bench bench-import chaos policy-check system-deps kafka kafka-certs simulate simulate-bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m deploy.run

system-deps:
	deploy/system-deps.sh

# Apache Kafka (deploy/kafka/pom.xml) from Maven Central into .kafka/lib, once.
kafka: $(VENV)/.installed
	$(PY) -c "from medsettle.kafka_broker import kafka_lib; print('Apache Kafka in', kafka_lib())"

# The secure Kafka profile's CA and broker certificate into .kafka-certs/ (ignored by git), once.
kafka-certs:
	sh deploy/kafka-secure/certs.sh .kafka-certs

test: $(VENV)/.installed system-deps kafka
	$(PY) -m pytest

demo: $(VENV)/.installed
	$(PY) -m deploy.demo

docs: $(VENV)/.installed
	DATABASE_URL=postgresql://unused KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 $(PY) -m services.asyncapi docs/asyncapi
	mkdir -p docs/openapi
	$(PY) -m services.gateway openapi > docs/openapi/gateway.json

bench: $(VENV)/.installed
	$(PY) -m deploy.bench

bench-import: $(VENV)/.installed
	$(PY) -m deploy.bench_import

chaos: $(VENV)/.installed
	$(PY) -m deploy.chaos

policy-check: $(VENV)/.installed
	$(PY) -m medsettle.policy $(FILE)

# Policy simulation (README "Policy simulation"): make simulate POLICY=file REGION=code YEAR=yyyy [OUT=file]
OUT ?= simulation-results/simulation.json
simulate: $(VENV)/.installed
	$(PY) -m services.simulation --policy $(POLICY) --region $(REGION) --year $(YEAR) --out $(OUT)

simulate-bench: $(VENV)/.installed
	$(PY) -m deploy.simulate_bench

clean:
	rm -rf $(VENV) .kafka .kafka-certs .run .pytest_cache .hypothesis bench-results simulation-results
