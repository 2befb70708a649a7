"""Waits until a crossrank server at ADDR reports grpc.health.v1 SERVING for "" (all models ready).

Usage: wait_serving.py ADDR [TIMEOUT_SECONDS=300]
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

addr = sys.argv[1]
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 300
with grpc.insecure_channel(addr) as channel:
    grpc.channel_ready_future(channel).result(timeout=60)
    for r in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout):
        if r.status == health_pb2.HealthCheckResponse.SERVING:
            break
