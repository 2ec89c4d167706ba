"""政务信息资源目录: the catalogue of datasets, their fields, and the pool tables holding the data."""
