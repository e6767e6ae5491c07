"""The provider's default numbers, in a module that imports nothing.

Operators and sensors read these in their signatures, so they are needed when a DAG file is
parsed; keeping them apart from the modules that use them (envelope parsing, retry policy,
polling) means a DAG file does not pay for those modules on every parse.
"""

from __future__ import annotations

from typing import Final

#: kie gives no generation-time figures; third parties report ~10-50 s. 3-5 s polls are the norm.
DEFAULT_POLL_INTERVAL_SECONDS: Final = 5.0

#: The shortest generation the default poll schedule plans for. kie publishes no timings;
#: third parties report ~10-50 s through kie and BFL markets Kontext at "a few seconds", so a
#: task done sooner than this is rare, and even then it waits at most this plus one interval.
DEFAULT_MIN_GENERATION_SECONDS: Final = 5.0

#: Overall wait when the caller sets none: kie's own 408 speaks of "no result for over 10 minutes".
DEFAULT_TIMEOUT_SECONDS: Final = 15 * 60.0

#: How long ``recordInfo is null`` means "not persisted yet" before it means "no such task".
DEFAULT_NOT_FOUND_GRACE_SECONDS: Final = 60.0

#: Refuse result files larger than this; a Kontext image is a few MB at most.
DEFAULT_MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024

#: kie's documented default create limit: 20 new tasks per 10 s, per account (kie raises it on request).
KIE_CREATES_PER_WINDOW: Final = 20
KIE_WINDOW_SECONDS: Final = 10.0

#: The connection every operator, sensor, decorator and hook uses unless told otherwise.
DEFAULT_CONN_ID: Final = "kontext_default"
#: Where kie's API and its file-upload API live (a different host).
DEFAULT_BASE_URL: Final = "https://api.kie.ai"
DEFAULT_UPLOAD_BASE_URL: Final = "https://kieai.redpandaai.co"
#: Connection extras' defaults: seconds to connect and to wait for an answer.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 30.0
#: Connection extras' defaults: attempts per call and the jittered exponential backoff between them.
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_BACKOFF_INITIAL: Final = 1.0
DEFAULT_BACKOFF_MAX: Final = 30.0
