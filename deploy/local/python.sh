#!/usr/bin/env bash
# Clients of other ecosystems that tests drive, in a Python virtual
# environment under .local/python, at the versions pinned (with every
# dependency) in deploy/local/python-requirements.txt:
# - confluent-kafka: librdkafka, and the schema-registry serializers
#   (ProtobufSerializer, JSONSerializer) that frame records;
# - kubernetes-validate: the Kubernetes API's JSON schemas, against which
#   the Helm chart's rendered objects are validated.
# Idempotent: nothing is done when the environment holds these versions.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.local/python
REQ=deploy/local/python-requirements.txt
if [[ -x $VENV/bin/python ]] && cmp -s "$REQ" "$VENV/.requirements"; then
  exit 0
fi
PYTHON=${PYTHON:-python3}
echo "installing the Python test clients into $VENV"
"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$REQ"
"$VENV/bin/pip" check --disable-pip-version-check >/dev/null
cp "$REQ" "$VENV/.requirements"
