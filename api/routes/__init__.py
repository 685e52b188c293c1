"""HTTP routes: thin functions over ``api.context.ApiContext``."""
