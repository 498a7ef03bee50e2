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


def _bert_pipeline(model: models.Model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def _continuing_pieces(sentences: list[str], tok: Tokenizer) -> list[str]:
    """Every "##c" piece that training will create (a character seen inside a word), sorted."""
    chars = set()
    for sentence in sentences:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(sentence)):
            chars.update(word[1:])
    return ["##" + c for c in sorted(chars)]


def train_tokenizer(
    sentences: Iterable[str], vocab_size: int, max_length: int = 77
) -> PreTrainedTokenizerFast:
    """Train WordPiece on `sentences`; the result pads on the right and truncates to `max_length` (CLIP's 77).

    The same sentences always give the same vocabulary. `tokenizers`' trainer alone does not guarantee
    that: it numbers the "##c" pieces in hash-map order and those numbers break ties between equally
    frequent merges (huggingface/tokenizers#1794). Registering the pieces up front, sorted, fixes their
    numbers; the vocabulary is then moved into a fresh tokenizer so that they do not stay special tokens.
    """
    sentences = list(sentences)
    trained = _bert_pipeline(models.WordPiece(unk_token="[UNK]"))
    pinned = list(SPECIAL_TOKENS) + _continuing_pieces(sentences, trained)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=pinned, show_progress=False)
    trained.train_from_iterator(sentences, trainer=trainer)

    tok = _bert_pipeline(models.WordPiece(trained.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
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
