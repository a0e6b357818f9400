"""pretrain: tokenizer training, datatrove tokenization, window packing and a small Llama trainer.

Stages (``run(ctx)``): ``pretrain.build_tokenizer`` (the ``tokenizer`` stage), ``pretrain.tokenize_docs`` (the
``tokenize`` stage), ``pretrain.train``. Library modules:
``pretrain.data`` (``.ds`` windows), ``pretrain.model`` (``ModelSpec`` presets, ``build_model``),
``pretrain.trainer`` (``TrainConfig``, ``lr_at``, ``train``).
"""
