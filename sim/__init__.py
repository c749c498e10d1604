"""speedllm.sim"""
