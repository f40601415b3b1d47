"""Sends Sluice's e2e events through the official Python Sentry SDK.

SENTRY_DSN names the Sluice under test. Captured: one exception twice from
the same code site, a message, and a chained exception (raise ... from ...).
"""
import os

import sentry_sdk


def checkout(order):
    raise ValueError(f"python order {order} cannot be paid")


def load_cart():
    try:
        {}["sku"]
    except KeyError as e:
        raise RuntimeError("python cart failed to load") from e


def main():
    sentry_sdk.init(
        dsn=os.environ["SENTRY_DSN"],
        environment="e2e-python",
        release="py-e2e@1.0",
        server_name="py-host",
    )
    sentry_sdk.set_tag("suite", "sentry-e2e")
    for order in (1001, 1002):
        try:
            checkout(order)
        except ValueError as e:
            sentry_sdk.capture_exception(e)
    sentry_sdk.capture_message("python e2e message", level="warning")
    try:
        load_cart()
    except RuntimeError as e:
        sentry_sdk.capture_exception(e)
    sentry_sdk.flush(timeout=15)


if __name__ == "__main__":
    main()
