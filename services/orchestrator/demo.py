"""``cfgclone demo``: a short walk through the suite on a fresh machine.

It runs against a suite started on free ports and the embedded database, and
prints each step as a person would want to read it.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cfgclone.common.clients import open_channel
from cfgclone.orchestrator.suite import RunningSuite
from cfgclone.v1 import collector_service_pb2 as collector_pb
from cfgclone.v1 import collector_service_pb2_grpc as collector_grpc
from cfgclone.v1 import common_pb2

GIB = 2**30

FLEET = [
    ("db-01", 32, 64 * GIB, {"role": "db", "zone": "a"}),
    ("db-02", 32, 64 * GIB, {"role": "db", "zone": "b"}),
    ("db-small", 4, 16 * GIB, {"role": "db", "zone": "b"}),
    ("web-01", 8, 16 * GIB, {"role": "web", "zone": "a"}),
]


async def _health(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def run(up: RunningSuite) -> int:
    """Walk through the demo; 0 when every step did what it should."""
    print("1. Every service answers gRPC health checks and reflection:")
    for service in up.services:
        print(f"   {service.name:<13} {service.address:<16} {await _health(service.address)}")

    print("\n2. A small fleet registers with the collector (as agents do at start):")
    async with open_channel(up.address("collector")) as channel:
        stub = collector_grpc.CollectorServiceStub(channel)
        for system_id, cores, memory, labels in FLEET:
            await stub.RegisterSystem(
                collector_pb.RegisterSystemRequest(
                    system=common_pb2.System(
                        name=f"systems/{system_id}",
                        hostname=f"{system_id}.example.internal",
                        cpu_cores=cores,
                        memory_bytes=memory,
                        architecture="x86_64",
                        os="debian 12",
                        labels=labels,
                    )
                ),
                timeout=5,
            )
            print(f"   registered systems/{system_id}: {cores} cores, {memory // GIB} GiB")

        print("\n3. Selecting the database tier by label (role=db):")
        reply = await stub.ListSystems(
            collector_pb.ListSystemsRequest(label_selector="role=db"), timeout=5
        )
        for system in reply.systems:
            print(f"   {system.name}  zone={system.labels['zone']}")

        print("\n4. Bad input is refused with a reason and changes nothing:")
        try:
            await stub.RegisterSystem(
                collector_pb.RegisterSystemRequest(system=common_pb2.System(name="DB 03")),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            print(f"   {error.code().name}: {error.details()}")
        else:
            print("   unexpected: a bad system name was accepted")
            return 1
    print("\nDone. `cfgclone up` keeps the suite running; see README.md for grpcurl calls.")
    return 0
