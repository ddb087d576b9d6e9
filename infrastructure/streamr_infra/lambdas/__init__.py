"""AWS Lambda handlers the stacks deploy. Each folder is one function's whole code (standard
library and the boto3 that the Lambda runtime provides), so that it ships as a plain asset."""
