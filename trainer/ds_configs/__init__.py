"""DeepSpeed configuration files (ZeRO-2 default, ZeRO-3, CPU offload); "auto" values come from the HF Trainer."""
