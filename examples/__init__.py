"""Example Restate services written with the official Python SDK.

Each module exposes an ASGI `app` to run under hypercorn or uvicorn, e.g.
`hypercorn examples.demo:app --bind 127.0.0.1:9080`. The end-to-end tests run them
against the server under test.
"""
