"""Named tokenizer variants, one module per family; each registers its builders with
`@vistok.tokenizers.registry.register(name)` (timm's `@register_model`). The registry imports every module of
this package, so a new family is a new file here and nothing else."""
