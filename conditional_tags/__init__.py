"""Conditional pretraining: keep the data, change what the model learns from it.

- ``sentences``: rule-based sentence splitter (character spans).
- ``document_tagger``: ``DocumentTagger`` (document tags, one threshold: the ``tag`` kind of ``filters.variants``).
- ``tagging_steps``: datatrove steps ``SentenceScorer``, ``BinnedDocumentTagger``, ``SentenceTagger``,
  ``InlineTagger``, ``LossMasker``.
- ``inject``: injection / upsampling at a token share, optionally in a training window.
- ``vocab``: tag token ids, conditioning and blocking tags at generation.
- ``config`` / ``stage``: the variant stage for kinds doc_tag, sentence_tag, inline_tag, mask, inject.
- ``variant_kinds``: those kinds' settings in the experiment config (``document_tag``: the ``tag`` kind's).

See docs/conditional_tags.md.
"""
