"""Allocation problems of real programs: the buffers of a transformers model's forward pass, or
of a training step (forward and the weights' gradients), as a compiler without fusion sees
them. The model is built with random weights, and make_fx traces its step on fake tensors;
each aten call's output is a buffer from its call to its last reader (the step's outputs to the
end); an output that aliases an input (a view, an in-place op) is the input's buffer; sizes are
storage bytes rounded up to 64. The weights and inputs are not buffers here (they live outside
an activation arena), nor are a fused kernel's temporaries; a compiler that fuses keeps fewer,
larger-lived buffers. Small configurations, so the step takes seconds to trace."""
from __future__ import annotations

import operator
import warnings

from planner.place import Block

ROUND = 64


def model(arch: str, layers: int):
    """A small `arch` of `layers` layers, random weights."""
    import transformers as T
    T.logging.set_verbosity_error()
    if arch == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(n_layer=layers, n_embd=256, n_head=4, vocab_size=5000))
    if arch == "llama":
        return T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=layers, hidden_size=256, num_attention_heads=4,
                                                num_key_value_heads=2, intermediate_size=688, vocab_size=5000))
    if arch == "bert":
        return T.BertForMaskedLM(T.BertConfig(num_hidden_layers=layers, hidden_size=256, num_attention_heads=4,
                                              intermediate_size=1024, vocab_size=5000))
    if arch == "t5":
        return T.T5ForConditionalGeneration(T.T5Config(num_layers=layers, num_decoder_layers=layers, d_model=256, d_kv=32,
                                                       num_heads=8, d_ff=1024, vocab_size=4000, decoder_start_token_id=0,
                                                       pad_token_id=0, eos_token_id=1))
    raise ValueError(f"no model {arch!r}")


def graph(arch: str, layers: int, batch: int, seq: int, train: bool) -> list[Block]:
    """The buffers of one step of `arch` (gpt2, llama, bert, t5) over `batch` x `seq` tokens."""
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.func import functional_call

    torch.manual_seed(0)
    net = model(arch, layers).train(train)
    net.config._attn_implementation = "eager"
    for module in net.modules():          # dropout's masks would be buffers a real step may not keep
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    weights, constants = dict(net.named_parameters()), dict(net.named_buffers())
    ids = torch.randint(0, 4000, (batch, seq))
    inputs = {"input_ids": ids, "labels": ids[:, :max(2, seq // 2)].contiguous() if arch == "t5" else ids}

    def step(values, buffers, inputs):
        out = functional_call(net, {**dict(zip(weights, values)), **dict(zip(constants, buffers))}, (), inputs)
        return torch.autograd.grad(out.loss, values) if train else out.logits

    with torch.set_grad_enabled(train), warnings.catch_warnings():
        warnings.simplefilter("ignore")     # transformers' notes on tracing
        traced = make_fx(step, tracing_mode="fake")(list(weights.values()), list(constants.values()), inputs)
    return _buffers(list(traced.graph.nodes))


def _buffers(nodes) -> list[Block]:
    step = {node: i for i, node in enumerate(nodes)}
    owner, spans = {}, []           # node -> its buffer; buffer -> [first, last, size]
    for node in nodes:
        if node.op != "call_function":
            continue
        base = _aliased(node)
        if base is not None:
            if base in owner:
                owner[node] = owner[base]
            continue
        size = sum(t.untyped_storage().nbytes() for t in _tensors(node.meta.get("val")))
        if size:
            owner[node] = len(spans)
            spans.append([step[node], step[node], -(-size // ROUND) * ROUND])
    for node, buffer in owner.items():
        spans[buffer][1] = max([spans[buffer][1], *(step[user] for user in node.users)])
    return [Block(first, last, size) for first, last, size in spans]


def _aliased(node):
    """The input whose storage `node`'s output shares (getitem of a tuple, a view, an in-place op), or None."""
    if node.target is operator.getitem:
        return node.args[0]
    schema = getattr(node.target, "_schema", None)
    if schema is None or not schema.returns or schema.returns[0].alias_info is None:
        return None
    shared = schema.returns[0].alias_info.before_set
    return next((arg for param, arg in zip(schema.arguments, node.args)
                 if param.alias_info is not None and param.alias_info.before_set & shared), None)


def _tensors(value) -> list:
    import torch
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, torch.Tensor)]
