"""The commands: one module per command, each with ``main(argv) -> int`` and its help as the module docstring.
``python -m mmcls NAME args`` runs one; the files in finetune/, pretrain/ and tools/ are thin wrappers."""
