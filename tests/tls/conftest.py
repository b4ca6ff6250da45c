"""The throwaway PKI for the TLS unit tests (the integration tests import it from tests.tls.harness)."""

from tests.tls.harness import pki  # noqa: F401
