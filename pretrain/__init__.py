"""pretrain: tokenizer training, datatrove tokenization, window packing and a small Llama trainer.

Stages (``run(ctx)``): ``pretrain.tokenizer``, ``pretrain.tokenize``, ``pretrain.train``. Library modules:
``pretrain.data`` (``.ds`` windows), ``pretrain.model`` (``ModelSpec`` presets, ``build_model``),
``pretrain.trainer`` (``TrainConfig``, ``lr_at``, ``train``).
"""
