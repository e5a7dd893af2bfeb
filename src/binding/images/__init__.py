"""The image wing of the binding study (spec §3-4): the context drawn as an image of coloured
shapes (`render`), visual encoders (`encoders`: architectures and their files; `pretrain`:
pretraining the small ones; `hf`: Hugging Face backbones), and the context variants the curricula
train on (`contexts`: text, noise tokens, image tokens)."""
