# The image the Airbyte platform runs. It installs the package the same way the tests and CI do
# (`pip install -c constraints.txt`, the same pinned set), not editable and without test extras.
# .ci/run runs this file's `RUN pip install` line in a fresh venv and uses the ENTRYPOINT it installs.
FROM docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

WORKDIR /airbyte/integration_code

COPY setup.py pyproject.toml constraints.txt main.py ./
COPY destination_redis ./destination_redis

ENV PIP_NO_CACHE_DIR=1
RUN pip install -c constraints.txt .

ENV AIRBYTE_ENTRYPOINT="destination-redis"
ENTRYPOINT ["destination-redis"]

LABEL io.airbyte.version=1.0.0
LABEL io.airbyte.name=airbyte/destination-redis
