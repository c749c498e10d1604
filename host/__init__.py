"""speedllm.host"""
