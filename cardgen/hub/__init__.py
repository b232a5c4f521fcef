"""Publishing to the Hugging Face Hub: the push, its payload and the transport underneath."""
