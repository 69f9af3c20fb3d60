"""What routing a query needs: the encoder and model, the torch and ONNX routers, loading,
the decision record, the fallback loop and the out-of-distribution score. Nothing here imports
the training stack.
"""
