"""The Qwen3-Reranker reference: the "Transformers Usage" example of the Qwen3-Embedding README.

Origin: https://github.com/QwenLM/Qwen3-Embedding, README.md, section "Reranker Model" >
"Transformers Usage", at commit f4ad0c434c0e3534494e26a4a6bdfd8ab1431968 (2025-06-13); the
Qwen/Qwen3-Reranker-* model cards carry the same code. The three functions and the setup lines
are copied as they are; what differs is marked `# changed:` — the checkpoint is a parameter
instead of "Qwen/Qwen3-Reranker-0.6B", the globals the README defines at module level are set by
`load`, and `max_length` may be lowered per call (the README fixes it at 8192) so the truncation
edges can be tested. The example queries at the end of the README are not copied.

Runs in the project's venv (the README needs transformers >= 4.51; the FlagEmbedding reference
env has 4.46).
"""

# ruff: noqa: UP032
# fmt: off
# Requires transformers>=4.51.0
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = model = token_false_id = token_true_id = prefix_tokens = suffix_tokens = None
max_length = 8192


def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = 'Given a web search query, retrieve relevant passages that answer the query'
    output = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(instruction=instruction,query=query, doc=doc)
    return output

def process_inputs(pairs):
    inputs = tokenizer(
        pairs, padding=False, truncation='longest_first',
        return_attention_mask=False, max_length=max_length - len(prefix_tokens) - len(suffix_tokens)
    )
    for i, ele in enumerate(inputs['input_ids']):
        inputs['input_ids'][i] = prefix_tokens + ele + suffix_tokens
    inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    for key in inputs:
        inputs[key] = inputs[key].to(model.device)
    return inputs

@torch.no_grad()
def compute_logits(inputs, **kwargs):
    batch_scores = model(**inputs).logits[:, -1, :]
    true_vector = batch_scores[:, token_true_id]
    false_vector = batch_scores[:, token_false_id]
    batch_scores = torch.stack([false_vector, true_vector], dim=1)
    batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
    scores = batch_scores[:, 1].exp().tolist()
    return scores
# fmt: on


def load(checkpoint):  # changed: the README's setup lines, for any checkpoint
    global tokenizer, model, token_false_id, token_true_id, prefix_tokens, suffix_tokens
    # fmt: off
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, padding_side='left')
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()

    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")

    prefix = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)
    # fmt: on


def scores(pairs, task=None, length=8192):  # changed: the README's last lines, as a function
    global max_length
    max_length = length
    pairs = [format_instruction(task, query, doc) for query, doc in pairs]
    inputs = process_inputs(pairs)
    return compute_logits(inputs)
