"""A model made ready to train: its initialisation scheme and summary."""

import torch
from torch import nn
from torchinfo import summary


def initialise_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv, linear, embedding, recurrent and attention weights (an embedding's
    padding row stays zero); norms get weight 1 / bias 0, biases 0.

    "default" keeps PyTorch's own per-layer initialisation.
    """
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            init_weight(module.weight, scheme, is_conv=not isinstance(module, nn.Linear))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            init_weight(module.weight, scheme, is_conv=False)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.RNNBase, nn.MultiheadAttention)):
            # Their weight matrices are parameters of the module itself, not nn.Linear children.
            for name, parameter in module.named_parameters(recurse=False):
                if "weight" in name:
                    init_weight(parameter, scheme, is_conv=False)
                elif "bias" in name:
                    nn.init.zeros_(parameter)


def init_weight(weight, scheme: str, is_conv: bool) -> None:
    # Convs use fan_out (as torchvision's ResNets do): it keeps the backward signal stable.
    fan_mode = "fan_out" if is_conv else "fan_in"
    if scheme == "kaiming_normal":
        nn.init.kaiming_normal_(weight, mode=fan_mode, nonlinearity="relu")
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(weight, mode=fan_mode, nonlinearity="relu")
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(weight)
    elif scheme == "normal":
        nn.init.normal_(weight, std=0.01)


def model_summary(model: nn.Module, example_input, device: torch.device) -> str:
    """torchinfo's table of layers, output sizes and parameter counts, for one example input."""
    table = summary(
        model,
        input_data=[example_input],
        device=device,
        mode="eval",
        verbose=0,
        col_names=("output_size", "num_params"),
    )
    return str(table)
