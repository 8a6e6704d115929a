"""CloudFormation templates of the `aws` provider, as YAML text.

- the connection template a customer deploys: the role Sailplane assumes (trust: the
  `LakeSailPrincipal` with the `ExternalId`) and exactly the permissions Sailplane uses;
- a network: VPC, two public and two private subnets, internet and NAT gateways, routes;
- a cluster's IAM roles: EKS control plane, nodes, and job runner pods (EKS Pod Identity).

Intrinsic functions are written in their long form (`{"Ref": ...}`, `{"Fn::Sub": ...}`), so
the YAML is plain (no custom tags) and any YAML parser reads it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from sailplane.domain.errors import InvalidValueError


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def dump_yaml(template: dict[str, Any]) -> str:
    return yaml.safe_dump(template, sort_keys=False, width=100)


def _allow(actions: list[str], resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


def _role_arn(pattern: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{pattern}"}


CONNECTION_PERMISSIONS: list[dict[str, Any]] = [
    _allow(
        [
            "ec2:DescribeRegions",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeVpcs",
            "ec2:DescribeSubnets",
            "ec2:DescribeRouteTables",
            "ec2:DescribeInternetGateways",
            "ec2:DescribeNatGateways",
            "ec2:DescribeAddresses",
            "ec2:DescribeSecurityGroups",
            "cloudwatch:GetMetricData",
            "cloudwatch:ListMetrics",
            "eks:ListClusters",
        ]
    ),
    _allow(
        [
            "cloudformation:CreateStack",
            "cloudformation:UpdateStack",
            "cloudformation:DeleteStack",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStackResources",
        ],
        [
            {
                "Fn::Sub": "arn:${AWS::Partition}:cloudformation:*:${AWS::AccountId}:stack/sailplane-*/*"
            },
            {"Ref": "AWS::StackId"},
        ],
    ),
    # CloudFormation creates the network stacks' resources with the caller's permissions.
    _allow(
        [
            "ec2:CreateVpc",
            "ec2:DeleteVpc",
            "ec2:ModifyVpcAttribute",
            "ec2:CreateSubnet",
            "ec2:DeleteSubnet",
            "ec2:ModifySubnetAttribute",
            "ec2:CreateInternetGateway",
            "ec2:DeleteInternetGateway",
            "ec2:AttachInternetGateway",
            "ec2:DetachInternetGateway",
            "ec2:AllocateAddress",
            "ec2:ReleaseAddress",
            "ec2:CreateNatGateway",
            "ec2:DeleteNatGateway",
            "ec2:CreateRouteTable",
            "ec2:DeleteRouteTable",
            "ec2:CreateRoute",
            "ec2:DeleteRoute",
            "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable",
            "ec2:CreateTags",
            "ec2:DeleteTags",
        ]
    ),
    _allow(
        [
            "eks:CreateCluster",
            "eks:DescribeCluster",
            "eks:DeleteCluster",
            "eks:UpdateClusterConfig",
            "eks:CreateNodegroup",
            "eks:DescribeNodegroup",
            "eks:UpdateNodegroupConfig",
            "eks:DeleteNodegroup",
            "eks:ListNodegroups",
            "eks:TagResource",
        ],
        [
            {"Fn::Sub": "arn:${AWS::Partition}:eks:*:${AWS::AccountId}:cluster/sailplane-*"},
            {"Fn::Sub": "arn:${AWS::Partition}:eks:*:${AWS::AccountId}:nodegroup/sailplane-*/*/*"},
        ],
    ),
    _allow(
        [
            "iam:CreateRole",
            "iam:DeleteRole",
            "iam:GetRole",
            "iam:TagRole",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:GetRolePolicy",
            "iam:PassRole",
        ],
        _role_arn("sailplane-*"),
    ),
    _allow(["iam:CreateServiceLinkedRole"]),
]


def connection_template_document(*, connection_id: str, principal: str, external_id: str) -> str:
    """The connection's CloudFormation template, its parameters defaulting to this connection."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Sailplane connection: a role Sailplane assumes with an external id "
        "to manage networks and EKS clusters in this account.",
        "Parameters": {
            "ConnectionId": {
                "Type": "String",
                "Default": connection_id,
                "Description": "The Sailplane connection this account belongs to.",
            },
            "LakeSailPrincipal": {
                "Type": "String",
                "Default": principal,
                "Description": "The AWS principal Sailplane runs as; only it may assume the role.",
            },
            "ExternalId": {
                "Type": "String",
                "Default": external_id,
                "Description": "The connection's external id, required when assuming the role.",
            },
        },
        "Resources": {
            "ConnectionRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Fn::Sub": "sailplane-connection-${ConnectionId}"},
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": _ref("LakeSailPrincipal")},
                                "Action": "sts:AssumeRole",
                                "Condition": {
                                    "StringEquals": {"sts:ExternalId": _ref("ExternalId")}
                                },
                            }
                        ],
                    },
                    "Policies": [
                        {
                            "PolicyName": "sailplane-connection",
                            "PolicyDocument": {
                                "Version": "2012-10-17",
                                "Statement": CONNECTION_PERMISSIONS,
                            },
                        }
                    ],
                    "Tags": [{"Key": "sailplane:connection", "Value": _ref("ConnectionId")}],
                },
            }
        },
        "Outputs": {
            "RoleArn": {"Value": {"Fn::GetAtt": ["ConnectionRole", "Arn"]}},
            "ConnectionId": {"Value": _ref("ConnectionId")},
        },
    }
    return dump_yaml(template)


def network_subnets(cidr: str) -> tuple[str, str, str, str]:
    """The four subnets (public A, public B, private A, private B) of a network's CIDR: its
    quarters. Raises InvalidValueError (422) unless `cidr` is an IPv4 block from /16 to /24."""
    try:
        block = ipaddress.IPv4Network(cidr)
    except ValueError:
        block = None
    if block is None or not 16 <= block.prefixlen <= 24:
        raise InvalidValueError(
            f"The network CIDR {cidr!r} is not an IPv4 block between /16 and /24 "
            "(such as 10.0.0.0/16).",
            field="config.cidr",
            code="invalid_cidr",
        )
    quarters = [str(s) for s in block.subnets(prefixlen_diff=2)]
    return quarters[0], quarters[1], quarters[2], quarters[3]


def network_template_document() -> str:
    """A VPC with two public subnets (internet gateway) and two private subnets (NAT gateway)
    in the region's first two availability zones."""

    def subnet(cidr_parameter: str, zone: int, public: bool) -> dict[str, Any]:
        role = "kubernetes.io/role/elb" if public else "kubernetes.io/role/internal-elb"
        return {
            "Type": "AWS::EC2::Subnet",
            "Properties": {
                "VpcId": _ref("Vpc"),
                "CidrBlock": _ref(cidr_parameter),
                "AvailabilityZone": {"Fn::Select": [zone, {"Fn::GetAZs": ""}]},
                "MapPublicIpOnLaunch": public,
                "Tags": [
                    {"Key": "Name", "Value": {"Fn::Sub": f"${{NetworkName}}-{cidr_parameter}"}},
                    {"Key": role, "Value": "1"},
                ],
            },
        }

    def association(table: str, subnet_name: str) -> dict[str, Any]:
        return {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {"RouteTableId": _ref(table), "SubnetId": _ref(subnet_name)},
        }

    parameters = ("PublicSubnetA", "PublicSubnetB", "PrivateSubnetA", "PrivateSubnetB")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Sailplane network: VPC, public and private subnets, NAT gateway.",
        "Parameters": {
            "NetworkName": {"Type": "String"},
            "VpcCidr": {"Type": "String"},
            **{f"{name}Cidr": {"Type": "String"} for name in parameters},
        },
        "Resources": {
            "Vpc": {
                "Type": "AWS::EC2::VPC",
                "Properties": {
                    "CidrBlock": _ref("VpcCidr"),
                    "EnableDnsSupport": True,
                    "EnableDnsHostnames": True,
                    "Tags": [{"Key": "Name", "Value": _ref("NetworkName")}],
                },
            },
            "InternetGateway": {"Type": "AWS::EC2::InternetGateway"},
            "GatewayAttachment": {
                "Type": "AWS::EC2::VPCGatewayAttachment",
                "Properties": {"VpcId": _ref("Vpc"), "InternetGatewayId": _ref("InternetGateway")},
            },
            "PublicSubnetA": subnet("PublicSubnetACidr", 0, True),
            "PublicSubnetB": subnet("PublicSubnetBCidr", 1, True),
            "PrivateSubnetA": subnet("PrivateSubnetACidr", 0, False),
            "PrivateSubnetB": subnet("PrivateSubnetBCidr", 1, False),
            "NatAddress": {
                "Type": "AWS::EC2::EIP",
                "DependsOn": "GatewayAttachment",
                "Properties": {"Domain": "vpc"},
            },
            "NatGateway": {
                "Type": "AWS::EC2::NatGateway",
                "Properties": {
                    "AllocationId": {"Fn::GetAtt": ["NatAddress", "AllocationId"]},
                    "SubnetId": _ref("PublicSubnetA"),
                },
            },
            "PublicRouteTable": {
                "Type": "AWS::EC2::RouteTable",
                "Properties": {"VpcId": _ref("Vpc")},
            },
            "PublicRoute": {
                "Type": "AWS::EC2::Route",
                "DependsOn": "GatewayAttachment",
                "Properties": {
                    "RouteTableId": _ref("PublicRouteTable"),
                    "DestinationCidrBlock": "0.0.0.0/0",
                    "GatewayId": _ref("InternetGateway"),
                },
            },
            "PublicSubnetARoutes": association("PublicRouteTable", "PublicSubnetA"),
            "PublicSubnetBRoutes": association("PublicRouteTable", "PublicSubnetB"),
            "PrivateRouteTable": {
                "Type": "AWS::EC2::RouteTable",
                "Properties": {"VpcId": _ref("Vpc")},
            },
            "PrivateRoute": {
                "Type": "AWS::EC2::Route",
                "Properties": {
                    "RouteTableId": _ref("PrivateRouteTable"),
                    "DestinationCidrBlock": "0.0.0.0/0",
                    "NatGatewayId": _ref("NatGateway"),
                },
            },
            "PrivateSubnetARoutes": association("PrivateRouteTable", "PrivateSubnetA"),
            "PrivateSubnetBRoutes": association("PrivateRouteTable", "PrivateSubnetB"),
        },
        "Outputs": {
            "VpcId": {"Value": _ref("Vpc")},
            "PublicSubnetIds": {
                "Value": {"Fn::Join": [",", [_ref("PublicSubnetA"), _ref("PublicSubnetB")]]}
            },
            "PrivateSubnetIds": {
                "Value": {"Fn::Join": [",", [_ref("PrivateSubnetA"), _ref("PrivateSubnetB")]]}
            },
            "NatGatewayId": {"Value": _ref("NatGateway")},
        },
    }
    return dump_yaml(template)


def _service_role(
    service: str, name: str, policies: list[str], actions: list[str]
) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": {"Fn::Sub": f"${{RolePrefix}}-{name}"},
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}
                ],
            },
            "ManagedPolicyArns": [
                {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::aws:policy/{policy}"}
                for policy in policies
            ],
        },
    }


def cluster_template_document() -> str:
    """The IAM roles an EKS cluster needs: the control plane's, the nodes' and the role its
    job runner pods assume through EKS Pod Identity."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Sailplane cluster: IAM roles of an EKS cluster and its node groups.",
        "Parameters": {"RolePrefix": {"Type": "String"}},
        "Resources": {
            "ClusterRole": _service_role(
                "eks.amazonaws.com", "cluster", ["AmazonEKSClusterPolicy"], ["sts:AssumeRole"]
            ),
            "NodeRole": _service_role(
                "ec2.amazonaws.com",
                "node",
                [
                    "AmazonEKSWorkerNodePolicy",
                    "AmazonEKS_CNI_Policy",
                    "AmazonEC2ContainerRegistryReadOnly",
                ],
                ["sts:AssumeRole"],
            ),
            "JobRunnerRole": _service_role(
                "pods.eks.amazonaws.com", "jr", [], ["sts:AssumeRole", "sts:TagSession"]
            ),
        },
        "Outputs": {
            "ClusterRoleArn": {"Value": {"Fn::GetAtt": ["ClusterRole", "Arn"]}},
            "NodeRoleArn": {"Value": {"Fn::GetAtt": ["NodeRole", "Arn"]}},
            "JobRunnerRoleArn": {"Value": {"Fn::GetAtt": ["JobRunnerRole", "Arn"]}},
        },
    }
    return dump_yaml(template)
