{% if cookiecutter.onnx_export == "yes" -%}
import onnxruntime
{% endif -%}
import pytest
import torch
from torch import nn

from {{ cookiecutter.project_slug }}.config.schema import INIT_SCHEMES
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.models import build_model, model_info, model_names
from {{ cookiecutter.project_slug }}.models.transformer import TextTransformer
from {{ cookiecutter.project_slug }}.training.model_setup import initialise_weights

SPEC = DataSpec(("a", "b", "c"), vocab_size=50, max_length=64)
TEXT_MODELS = [name for name in model_names() if model_info(name).task == "text_classification"]
PAD_ID, CLS_ID = 0, 2


def text_batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    """Random texts of these token counts, each starting with [CLS], right-padded to the longest."""
    lengths = torch.tensor(lengths)
    mask = torch.arange(int(lengths.max())) < lengths[:, None]
    ids = torch.randint(CLS_ID + 1, SPEC.vocab_size, mask.shape).masked_fill(~mask, PAD_ID)
    ids[:, 0] = CLS_ID
    return {"ids": ids, "mask": mask, "lengths": lengths}


def assert_padding_leaves_logits_unchanged(model: nn.Module) -> None:
    torch.manual_seed(1)
    batch = text_batch([5, 60])
    alone = {"ids": batch["ids"][:1, :5], "mask": batch["mask"][:1, :5]}
    alone["lengths"] = batch["lengths"][:1]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(alone), model(batch)[:1], atol=1e-5, rtol=0)


def test_every_text_model_is_tested():
    assert set(TEXT_MODELS) >= {"bag_of_embeddings", "bigru", "transformer"}


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_text_models_give_one_logit_per_class(name):
    model = build_model(name, SPEC)
    assert model(text_batch([7, 3, 1])).shape == (3, SPEC.num_classes)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_padding_leaves_a_texts_logits_unchanged(name):
    torch.manual_seed(0)
    assert_padding_leaves_logits_unchanged(build_model(name, SPEC))


def test_transformer_pooling_the_first_token_ignores_padding_too():
    torch.manual_seed(0)
    model = TextTransformer(SPEC.vocab_size, SPEC.num_classes, SPEC.max_length, pooling="first")
    assert_padding_leaves_logits_unchanged(model)


def test_bigru_gives_the_packed_states_without_packing_when_exported():
    model = build_model("bigru", SPEC)
    batch = text_batch([12, 5, 1])
    embedded, lengths = model.embedding(batch["ids"]), batch["lengths"]
    padded = model.padded_final_states(embedded, lengths)
    packed = model.packed_final_states(embedded, lengths)
    torch.testing.assert_close(padded, packed, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheme", [scheme for scheme in INIT_SCHEMES if scheme != "default"])
@pytest.mark.parametrize("name", TEXT_MODELS)
def test_init_schemes_change_every_weight_matrix_and_keep_padding_rows_zero(name, scheme):
    torch.manual_seed(0)
    model = build_model(name, SPEC)
    before = {key: value.clone() for key, value in model.named_parameters()}
    initialise_weights(model, scheme)
    for key, parameter in model.named_parameters():
        assert parameter.ndim == 1 or not torch.equal(before[key], parameter), key
    embeddings = [module for module in model.modules() if getattr(module, "padding_idx", None) == 0]
    assert embeddings
    for embedding in embeddings:
        assert torch.all(embedding.weight[PAD_ID] == 0)
{%- if cookiecutter.onnx_export == "yes" %}


@pytest.mark.slow
@pytest.mark.parametrize("name", TEXT_MODELS)
def test_text_models_export_to_onnx_and_agree_with_onnxruntime(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, SPEC).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=SPEC.max_length)
    axes = {"ids": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}, "lengths": {0: batch}}
    path = tmp_path / f"{name}.onnx"
    # A dict last in args is taken for keyword arguments: the empty one says there are none.
    example = (text_batch([9, 4]), {})
    torch.onnx.export(
        model, example, path, dynamo=True, dynamic_shapes=(axes,), external_data=False
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    input_names = [onnx_input.name for onnx_input in session.get_inputs()]
    for lengths in ([3], [SPEC.max_length, 20, 1, 7]):
        inputs = text_batch(lengths)
        with torch.no_grad():
            expected = model(inputs)
        feed = dict(zip(input_names, (tensor.numpy() for tensor in inputs.values()), strict=True))
        (actual,) = session.run(None, feed)
        torch.testing.assert_close(torch.from_numpy(actual), expected, atol=1e-4, rtol=0)
{%- endif %}
