"""nn.Modules only: encoder, pooling, heads, the multi-task model. Never imports training/ or data/."""
