"""Seeded random fault injection: a share of requests misbehave, drawn from ``random.Random``.

Queued faults (``inject_fault``) say exactly which request fails; a soak needs the opposite:
faults spread over thousands of requests, unknown to the client, yet reproducible and fully
accounted for. Each endpoint gets its own generator seeded from ``(seed, endpoint)``, so the
faults of the strictly sequential creates repeat exactly for a seed however the concurrent polls
interleave. Every fault applied is logged (:class:`AppliedFault`) with what identifies its
request (the prompt of a create, the kie task id of a poll or of a create the emulator accepted),
which is what lets a soak name the outcome each image must have. Pure: no I/O, no clock.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_RANDOM_FAULTS",
    "GENERATE_FAULTS",
    "READ_FAULTS",
    "AppliedFault",
    "FaultSpec",
    "RandomFaults",
]

#: One kind of fault with its parameters, e.g. ``{"kind": "code", "code": 402}``.
FaultSpec = Mapping[str, Any]

#: Faults a read (record-info, credit, download-url) must survive: all transient. Permanent
#: answers on a read (401, 402, 404, 505) end a whole wait by design, so they are not drawn by
#: default; name them explicitly to test that.
READ_FAULTS: tuple[FaultSpec, ...] = (
    {"kind": "code", "code": 429},
    {"kind": "code", "code": 455},
    {"kind": "code", "code": 500},
    {"kind": "code", "code": 422},  # record-info's "recordInfo is null": reads as still pending
    {"kind": "http", "status": 429},
    {"kind": "http", "status": 429, "retry_after": 0},
    {"kind": "http", "status": 500},
    {"kind": "http", "status": 503},
    {"kind": "html", "status": 502},
    {"kind": "malformed_json"},
    {"kind": "empty_body"},
    {"kind": "drop"},
    {"kind": "slow", "delay": 0.3},
)

#: Faults of a create: refusals (never billed), retryable drops (429, 455), ambiguous answers
#: (5xx, unreadable, dropped: the outcome is unknown, and after ``drop_after_accept`` or a slow
#: answer the task even exists). 401 is left out: it stops a whole batch, by design.
GENERATE_FAULTS: tuple[FaultSpec, ...] = (
    {"kind": "code", "code": 402},
    {"kind": "code", "code": 404},
    {"kind": "code", "code": 422},
    {"kind": "code", "code": 429},
    {"kind": "code", "code": 455},
    {"kind": "code", "code": 500},
    {"kind": "code", "code": 501},
    {"kind": "code", "code": 505},
    {"kind": "http", "status": 429},
    {"kind": "http", "status": 429, "retry_after": 0},
    {"kind": "http", "status": 500},
    {"kind": "http", "status": 503},
    {"kind": "html", "status": 502},
    {"kind": "malformed_json"},
    {"kind": "empty_body"},
    {"kind": "drop"},
    {"kind": "drop_after_accept"},
    {"kind": "slow", "delay": 0.3},
)

DEFAULT_RANDOM_FAULTS: dict[str, tuple[FaultSpec, ...]] = {
    "generate": GENERATE_FAULTS,
    "record-info": READ_FAULTS,
    "jobs-create": GENERATE_FAULTS,
    "jobs-record-info": READ_FAULTS,
    "credit": READ_FAULTS,
    "download-url": READ_FAULTS,
}


@dataclass
class AppliedFault:
    """One request that got a fault, queued or random, and what identifies that request."""

    seq: int
    endpoint: str
    kind: str
    params: dict[str, Any]
    random: bool
    #: The create's ``prompt`` (creates only; read from the request body, Market's ``input.prompt``).
    prompt: str | None = None
    #: The kie task id: polled (record-info), or created by a create whose answer was lost/late.
    task_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the control API."""
        return {
            "seq": self.seq,
            "endpoint": self.endpoint,
            "kind": self.kind,
            "params": dict(self.params),
            "random": self.random,
            "prompt": self.prompt,
            "taskId": self.task_id,
        }


@dataclass
class RandomFaults:
    """
    Fault ``rate`` of the requests to each endpoint of ``catalogue``, reproducibly for ``seed``.

    :param rate: Share of requests faulted, 0 to 1.
    :param seed: Seed of the generators (one per endpoint).
    :param catalogue: Endpoint -> fault specs drawn from uniformly; endpoints not in it are
        never faulted at random.
    """

    rate: float
    seed: int
    catalogue: dict[str, tuple[FaultSpec, ...]] = field(default_factory=lambda: dict(DEFAULT_RANDOM_FAULTS))
    drawn: int = 0
    _rngs: dict[str, random.Random] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 <= self.rate <= 1:
            raise ValueError(f"rate must be a number from 0 to 1, not {self.rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")
        self.catalogue = {endpoint: tuple(dict(spec) for spec in specs) for endpoint, specs in self.catalogue.items()}
        for endpoint, specs in self.catalogue.items():
            if not specs:
                raise ValueError(f"no fault kinds given for endpoint {endpoint!r}")
            for spec in specs:
                if not isinstance(spec.get("kind"), str):
                    raise ValueError(f"fault spec without a kind for {endpoint!r}: {dict(spec)!r}")
        self._rngs = {endpoint: random.Random(f"{self.seed}:{endpoint}") for endpoint in self.catalogue}

    @classmethod
    def build(
        cls,
        rate: float,
        seed: int,
        *,
        endpoints: Sequence[str] | None = None,
        kinds: Mapping[str, Sequence[FaultSpec]] | None = None,
    ) -> RandomFaults:
        """``kinds`` overrides the default catalogue per endpoint; ``endpoints`` restricts it."""
        catalogue = {name: tuple(specs) for name, specs in DEFAULT_RANDOM_FAULTS.items()}
        if kinds is not None:
            catalogue.update({name: tuple(specs) for name, specs in kinds.items()})
        if endpoints is not None:
            unknown = set(endpoints) - set(catalogue)
            if unknown:
                raise ValueError(f"no random fault kinds known for endpoint(s) {sorted(unknown)}; pass kinds")
            catalogue = {name: catalogue[name] for name in endpoints}
        return cls(rate=rate, seed=seed, catalogue=catalogue)

    def draw(self, endpoint: str) -> FaultSpec | None:
        """The fault for the next request to ``endpoint``, or ``None`` (most of the time)."""
        rng = self._rngs.get(endpoint)
        if rng is None or self.rate == 0:
            return None
        if rng.random() >= self.rate:
            return None
        self.drawn += 1
        return rng.choice(self.catalogue[endpoint])

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the stats."""
        return {
            "rate": self.rate,
            "seed": self.seed,
            "endpoints": sorted(self.catalogue),
            "drawn": self.drawn,
        }
