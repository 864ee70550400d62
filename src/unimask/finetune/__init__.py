"""Fine-tuning and adaptation: labelled pairs and chats for every family (``data``, ``batches``), LoRA
through peft (``lora``), and weight mappings between families (``adapt``)."""
