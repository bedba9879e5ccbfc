import requests
# Bulk delete inactive users
response = requests.delete(
    "https://api.example.com/users/batch",
    json={"filters": {"status": "inactive", "last_login_before": "2025-01-01"}}
)
result = response.json()
print(f"Deleted: {result['deleted_count']} users")
print(f"Not found: {result['not_found_count']}")
