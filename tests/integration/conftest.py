"""Integration fixtures: one real managed llama-server for the whole session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from semcascade import Cascade, CascadeConfig, load_config
from semcascade.scoring.base import AgreementScorer


@pytest.fixture(scope="session")
def local_config() -> CascadeConfig:
    return load_config(None)


@pytest.fixture(scope="session")
def local_cascade(local_config: CascadeConfig) -> Iterator[Cascade]:
    """The shipped default cascade, with its server started once and stopped at the end."""
    with Cascade(local_config) as cascade:
        cascade.prepare()
        yield cascade


def _variant(base: Cascade, *, scorer: AgreementScorer | None = None, **tier0: object) -> Cascade:
    cfg = base.config
    tiers = [cfg.tiers[0].model_copy(update=tier0), *cfg.tiers[1:]]
    return Cascade(cfg.model_copy(update={"tiers": tiers}), local_server=base.local_server, scorer=scorer)


@pytest.fixture(scope="session")
def variant() -> Callable[..., Cascade]:
    """Make a cascade sharing a base cascade's server, with the first tier's settings changed
    (and, with ``scorer=``, another agreement scorer)."""
    return _variant
