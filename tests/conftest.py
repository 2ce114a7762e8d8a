import os
import tempfile

# Compiled kernels of the test run go to a private cache directory.
os.environ.setdefault("SYMGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="symgrad-test-cache-"))
