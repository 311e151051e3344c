"""SimilarityService: translation between protobuf and the similarity engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cfgclone.common.auth import Role, require_role
from cfgclone.common.errors import InvalidArgument, NotFound
from cfgclone.common.message_checks import quote
from cfgclone.common.requests import (
    page_request,
    parse_label_selector,
    require,
    system_id_from_name,
)
from cfgclone.similarity.cohorts import Cohort
from cfgclone.similarity.distribution import compare_distributions
from cfgclone.similarity.errors import InvalidQuery, UnknownCohort
from cfgclone.similarity.fleet import Fleet
from cfgclone.similarity.scores import CloneDecision, Similarity
from cfgclone.v1 import common_pb2
from cfgclone.v1 import similarity_service_pb2 as pb
from cfgclone.v1 import similarity_service_pb2_grpc as pb_grpc

DEFAULT_NEIGHBOURS = 10

_DECISIONS = {
    CloneDecision.CLONE: pb.CLONE_DECISION_CLONE,
    CloneDecision.ADAPT: pb.CLONE_DECISION_ADAPT,
}


@contextmanager
def _query_errors() -> Iterator[None]:
    try:
        yield
    except InvalidQuery as error:
        raise InvalidArgument(str(error), reason="INVALID_QUERY") from error


def _fill_score(
    message: pb.SimilarityScore,
    similarity: Similarity,
    fingerprints: dict[str, common_pb2.Fingerprint],
) -> None:
    """Writes an answer into a score message in place (no message built and then copied)."""
    message.first = f"systems/{similarity.first}"
    message.second = f"systems/{similarity.second}"
    message.score = similarity.score
    for group in similarity.groups:
        field = message.groups.add()
        field.group = group.group
        field.similarity = group.similarity
        field.contribution = group.share
    message.decision = _DECISIONS[similarity.decision]
    message.threshold = similarity.threshold
    message.explanation = similarity.explanation
    a, b = fingerprints.get(similarity.first), fingerprints.get(similarity.second)
    if a is not None and b is not None:
        comparison = compare_distributions(a, b)
        if comparison.distance is not None:
            message.distribution_distance = comparison.distance
            message.shared_regimes = len(comparison.shared_regimes)
            message.shared_kpis.extend(comparison.shared_kpis)
        message.explanation = f"{message.explanation} {comparison.explanation}".strip()


def _cohort(cohort: Cohort) -> pb.Cohort:
    return pb.Cohort(
        name=f"cohorts/{cohort.cohort_id}",
        members=[f"systems/{m}" for m in cohort.members],
        centre=cohort.centre,
        spread=cohort.spread,
    )


class SimilarityServicer(pb_grpc.SimilarityServiceServicer):
    """Compares systems, finds the nearest ones, and groups the fleet into cohorts."""

    def __init__(self, fleet: Fleet, max_k: int) -> None:
        self._fleet = fleet
        self._max_k = max_k

    async def CompareSystems(
        self, request: pb.CompareSystemsRequest, context: Any
    ) -> pb.CompareSystemsResponse:
        require_role(Role.READER, "CompareSystems")
        require(request.first, "first")
        require(request.second, "second")
        first = system_id_from_name(request.first, "first")
        second = system_id_from_name(request.second, "second")
        await self._fleet.require_indexed(first, "first")
        await self._fleet.require_indexed(second, "second")
        similarity = self._fleet.index.compare(first, second)
        fingerprints = await self._fleet.fingerprints([first, second])
        response = pb.CompareSystemsResponse()
        _fill_score(response.similarity, similarity, fingerprints)
        return response

    async def FindSimilarSystems(
        self, request: pb.FindSimilarSystemsRequest, context: Any
    ) -> pb.FindSimilarSystemsResponse:
        require_role(Role.READER, "FindSimilarSystems")
        require(request.system, "system")
        system_id = system_id_from_name(request.system, "system")
        if request.page_size > self._max_k:
            raise InvalidArgument.for_field(
                "page_size", f"must be at most {self._max_k} (got {request.page_size})"
            )
        labels = parse_label_selector(request.label_selector)
        page = page_request(
            request.page_size,
            request.page_token,
            query=[system_id, labels],
            default_size=DEFAULT_NEIGHBOURS,
            max_size=self._max_k,
        )
        if page.offset + page.size > self._max_k:
            raise InvalidArgument.for_field(
                "page_token", f"pages reach at most the {self._max_k} nearest systems"
            )
        if len(self._fleet.index) == 0:
            return pb.FindSimilarSystemsResponse()
        await self._fleet.require_indexed(system_id, "system")
        k = min(page.offset + page.size + 1, self._max_k)
        with _query_errors():
            # On the event loop, not in a worker thread: the search takes well under a
            # millisecond (an approximate index from the switch-over size up, an exact
            # scan below it), less than the hop to a thread and back on busy cores.
            nearest = self._fleet.index.nearest(system_id, k, labels=labels or None)
        chosen = nearest[page.offset : page.offset + page.size]
        fingerprints = (
            await self._fleet.fingerprints([system_id, *(s.second for s in chosen)])
            if request.include_distribution
            else {}
        )
        more = len(nearest) > page.offset + page.size and page.offset + page.size < self._max_k
        response = pb.FindSimilarSystemsResponse(next_page_token=page.next_token(len(chosen), more))
        for similarity in chosen:
            _fill_score(response.similar_systems.add(), similarity, fingerprints)
        return response

    async def ListCohorts(
        self, request: pb.ListCohortsRequest, context: Any
    ) -> pb.ListCohortsResponse:
        require_role(Role.READER, "ListCohorts")
        page = page_request(request.page_size, request.page_token, default_size=50)
        if len(self._fleet.index) == 0:
            return pb.ListCohortsResponse()
        cohorts = list(await asyncio.to_thread(self._fleet.index.cohorts))
        chosen = cohorts[page.offset : page.offset + page.size]
        return pb.ListCohortsResponse(
            cohorts=[_cohort(c) for c in chosen],
            next_page_token=page.next_token(len(chosen), page.offset + page.size < len(cohorts)),
        )

    async def GetCohort(self, request: pb.GetCohortRequest, context: Any) -> pb.GetCohortResponse:
        require_role(Role.READER, "GetCohort")
        require(request.name, "name")
        collection, _, cohort_id = request.name.partition("/")
        if collection != "cohorts" or not cohort_id:
            raise InvalidArgument.for_field(
                "name", f"must be cohorts/{{id}} (got {quote(request.name)})"
            )
        if len(self._fleet.index) == 0:
            raise NotFound(f"{request.name} does not exist: the fleet has no fingerprints yet")
        cohorts = await asyncio.to_thread(self._fleet.index.cohorts)
        try:
            cohort = cohorts.get(cohort_id)
        except UnknownCohort:
            raise NotFound(
                f"{request.name} does not exist; ListCohorts gives the current cohorts",
                reason="COHORT_NOT_FOUND",
            ) from None
        return pb.GetCohortResponse(cohort=_cohort(cohort))
