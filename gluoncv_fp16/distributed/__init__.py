"""Distributed training: worker roles, the dist kvstore and Horovod, the launcher."""
