"""The security tests use the browser fixture of the browser tests."""

from tests.browser.conftest import browser_context as browser_context
