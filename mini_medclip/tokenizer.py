"""A WordPiece tokenizer trained on the course's own report sentences.

MedCLIP borrows Bio_ClinicalBERT's tokenizer. With no hub access we train the same kind of tokenizer
(BERT's lower-casing normaliser, BERT's pre-tokenizer, WordPiece, [CLS] ... [SEP]) on our corpus, then
wrap it as a `transformers` fast tokenizer so that the rest of the code calls it like any BERT tokenizer
and saves/loads it with `save_pretrained` / `PreTrainedTokenizerFast.from_pretrained(local_dir)`.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order


def train_tokenizer(
    sentences: Iterable[str], vocab_size: int, max_length: int = 77
) -> PreTrainedTokenizerFast:
    """Train WordPiece on `sentences`; the result pads on the right and truncates to `max_length` (CLIP's 77).

    Training is deterministic for the same sentences in the same order (the WordPiece trainer is).
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tok.train_from_iterator(sentences, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=max_length,
        padding_side="right",
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
