# The image the Airbyte platform runs, in the form of Airbyte's connector template
# (docker-images/Dockerfile.python-connector): the base image is a build argument whose default is
# the pinned `connectorBuildOptions.baseImage` of metadata.yaml (unit_tests/test_dockerfile.py fails
# when the two differ); the package is installed the way the tests and CI install it
# (`pip install -c constraints.txt .`: the same pinned set, not editable, no test extras); the
# connector runs as the base's non-root user airbyte (uid 1000). At run time it writes nothing
# outside /tmp (TLS client certificates and keys, for an instant), so a read-only root filesystem
# with a writable /tmp is enough.
# scripts/docker_image.sh builds it (on a stand-in of the base: --build-arg BASE_IMAGE=...);
# integration_tests/test_image.py runs it.
ARG BASE_IMAGE=docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73
FROM ${BASE_IMAGE}

# The install writes to the base's /usr/local: as root, whatever user the base ends with.
USER root
WORKDIR /airbyte/integration_code
ENV PIP_NO_CACHE_DIR=1

# The dependencies first, in a layer that only these three files change, so that a rebuild after a
# code change reuses it: setup.py with an empty destination_redis/ installs them and no module (its
# own record is removed again).
COPY setup.py pyproject.toml constraints.txt ./
RUN mkdir destination_redis \
    && pip install -c constraints.txt . \
    && pip uninstall --yes destination_redis \
    && rm -rf destination_redis build destination_redis.egg-info

COPY main.py ./
COPY destination_redis ./destination_redis
RUN pip install -c constraints.txt .

# uid 1000 is the base's user airbyte; numeric, so that Kubernetes (runAsNonRoot) can verify it.
USER 1000:1000
ENV AIRBYTE_ENTRYPOINT="destination-redis"
ENTRYPOINT ["destination-redis"]

LABEL io.airbyte.version=1.6.0
LABEL io.airbyte.name=airbyte/destination-redis
