import requests
updates = [
    {"id": 42, "name": "Alice Updated"},
    {"id": 55, "name": "Bob Updated"},
    {"id": 999, "name": "NonExistent"} # This will fail
]
response = requests.patch(
    "https://api.example.com/users/batch",
    json={"updates": updates}
)
result = response.json()
print(f"Succeeded: {len(result['succeeded'])}")
print(f"Failed: {len(result['failed'])}")
for failure in result['failed']:
    print(f" ID {failure['id']}: {failure['error']}")
