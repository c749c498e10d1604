"""speedllm.hw"""
