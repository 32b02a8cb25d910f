"""Export: the whole model (encoder, pooling, projection, normalisation, every head) as one ONNX graph."""
