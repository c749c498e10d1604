"""speedllm.golden"""
