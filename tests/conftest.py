"""Shared test configuration."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free every compiled XLA program after each test module.

    Each CPU executable keeps about six memory mappings of its JIT-compiled
    code, and a test worker that compiles thousands of programs reaches the
    kernel's limit (``vm.max_map_count``, 65,530 by default): LLVM's next
    allocation then fails and XLA aborts mid-compile. Modules share no
    compiled programs worth keeping, so clearing between them costs nothing.
    """
    yield
    jax.clear_caches()
