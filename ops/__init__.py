"""speedllm.ops"""
