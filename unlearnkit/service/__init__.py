"""The deletion-request service: a ledger, serving, an audit chain, an HTTP API, HTML reports."""
