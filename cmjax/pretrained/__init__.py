"""Importers of public pretrained weights into cmjax parameter trees (numpy and
safetensors only: no PyTorch at run time)."""
