"""speedllm.bitstreams"""
