"""Runs the connector as `python main.py spec|check|write ...`, exactly like the console script."""

from destination_redis.run import run

if __name__ == "__main__":
    run()
