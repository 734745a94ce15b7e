"""The processor app: a consumer group applying commands exactly once; recovery, replay, rebuild, imports."""
